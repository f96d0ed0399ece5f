"""Verifies webhook deliveries with the Standard Webhooks reference library.

stdin: a JSON array of {"secret": str, "body": str, "headers": {name: value}}.
stdout: a JSON array, one entry per delivery: {"ok": bool, "error": str|null}.
A `whsec_` secret is passed as text (the library base64-decodes it); any other
secret is passed as its raw bytes, which is how ZiB keys such secrets.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def verify(item):
    secret = item["secret"]
    key = secret if secret.startswith("whsec_") else secret.encode()
    try:
        Webhook(key).verify(item["body"], item["headers"])
        return {"ok": True, "error": None}
    except Exception as e:  # the library raises its own error types
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


print(json.dumps([verify(item) for item in json.load(sys.stdin)]))
