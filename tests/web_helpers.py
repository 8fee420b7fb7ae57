"""Shared by the web tests: answers with a known grade, and how to get a form's CSRF token."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

# A clear paraphrase of the ch13-1 reference: every key point in its own words, graded correct (score 1.0
# with the calibration in evals/calibration.json). Each sentence earns one key point, so each is highlighted.
CORRECT_13_1 = (
    "bf16 keeps fp32's 8-bit exponent, whereas fp16 has just 5 exponent bits. "
    "That gives bf16 the same huge dynamic range as fp32. "
    "Tiny gradients do not underflow and big activations do not overflow, so loss scaling is not needed. "
    "Losing some mantissa precision hurts training far less than fp16's narrow range does."
)
FIRST_SENTENCE_13_1 = "bf16 keeps fp32's 8-bit exponent, whereas fp16 has just 5 exponent bits."
# The grader's own test case for the "more precise" misconception (tests/grader_cases.py): incorrect.
MISCONCEPTION_13_1 = "bf16 is safer because it is more precise than fp16, it keeps more significant digits."

XSS = (
    '<script>window.__xss = 1; alert("xss")</script><img src=x onerror="window.__xss = 2"> '
    "{{ 7 * 7 }} {% if true %}jinja{% endif %} **not bold** [link](javascript:alert(3)) &amp; done"
)

TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_token(client: TestClient, path: str = "/q/ch13-1") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    m = TOKEN.search(page.text)
    assert m, "no CSRF token on the page"
    return m.group(1)
