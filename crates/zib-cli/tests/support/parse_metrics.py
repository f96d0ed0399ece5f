"""Parses a /metrics scrape (stdin) with the Prometheus Python client and prints
its samples as JSON: [{"family", "type", "name", "labels", "value"}].

The strict OpenMetrics parser (the format the server declares) must accept it, and
so must the classic Prometheus text parser that older scrapers use."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as classic_parse

text = sys.stdin.read()
list(classic_parse(text))  # raises on text the classic parser cannot read
out = []
for family in om_parse(text):
    for s in family.samples:
        out.append(
            {
                "family": family.name,
                "type": family.type,
                "name": s.name,
                "labels": s.labels,
                "value": s.value,
            }
        )
json.dump(out, sys.stdout)
