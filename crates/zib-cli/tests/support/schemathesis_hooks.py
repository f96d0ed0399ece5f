"""Schemathesis hooks for crates/zib-cli/tests/openapi.rs (loaded through
SCHEMATHESIS_HOOKS).

Whether a webhook URL is accepted depends on the world, not only on its form: the
server resolves its host and refuses one that does not resolve (or, outside
`zib dev`, one that resolves to a private address). No schema can state DNS, so a
generated http(s) URL in a request body is pointed at a loopback target that
resolves. Everything else about it (its form, its length, every other field) is still
generated and checked: strings that are not http(s) URLs are left alone for the
server to refuse, and schemathesis re-validates the body after this hook, so a case
stays negative only if something else in it is invalid. `before_call` runs in
every phase; schemathesis re-validates what it changes.
"""

import re

import schemathesis

# The form the document states for a webhook URL (any case of the scheme).
HTTP_URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://")
TARGET = "http://127.0.0.1:9/zib-openapi-test"
URL_FIELDS = ("url", "webhook_url")


def _pin(obj):
    if not isinstance(obj, dict):
        return
    for field in URL_FIELDS:
        value = obj.get(field)
        if isinstance(value, str) and HTTP_URL.search(value):
            obj[field] = TARGET
    _pin(obj.get("pipeline"))


@schemathesis.hook
def before_call(context, case, **kwargs):
    # Runs for every phase (examples, coverage, fuzzing, stateful), unlike map_body.
    _pin(case.body)
