"""Content-Disposition for any file name: one header line, ASCII, the exact name kept."""

from __future__ import annotations

from scitq_bench.server.downloads import attachment


def test_any_name_makes_one_ascii_header_line_that_keeps_it():
    value = attachment('a"b\\c\r\nd%e\u00e9\U0001f600\ud800.txt')
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert value == ("attachment; filename=\"a_b_c__d_e___.txt\"; "
                     "filename*=UTF-8''a%22b%5Cc%0D%0Ad%25e%C3%A9%F0%9F%98%80%3F.txt")
    assert attachment("") == "attachment; filename=\"download\"; filename*=UTF-8''"
    assert attachment("plain.csv") == (
        "attachment; filename=\"plain.csv\"; filename*=UTF-8''plain.csv")
