"""Address parsing: the forms users type, and every malformed one refused."""

from __future__ import annotations

import pytest

from hoard.store.address import Address, check_revision, parse_address, parse_prefix
from hoard.store.errors import InvalidAddress, NameTooLong


def test_full_address() -> None:
    a = parse_address("huggingface/openai-community/gpt2@v1.0/sub/config.json")
    assert a == Address("huggingface", "openai-community", "gpt2", "v1.0", "sub/config.json")
    assert a.repo_key == "huggingface/openai-community/gpt2"
    assert str(a) == "huggingface/openai-community/gpt2@v1.0/sub/config.json"


def test_quoted_revision_and_leading_slash() -> None:
    a = parse_address("/huggingface/org/repo@refs%2Fpr%2F1/model.safetensors")
    assert a.revision == "refs/pr/1"
    assert str(a).startswith("huggingface/org/repo@refs%2Fpr%2F1/")


def test_hf_datasets_and_spaces() -> None:
    a = parse_address("huggingface/datasets/org/ds/data/train.csv")
    assert (a.kind, a.owner, a.repo, a.path) == ("datasets", "org", "ds", "data/train.csv")
    assert a.repo_key == "huggingface/datasets/org/ds"


def test_default_source_for_bare_repo_id() -> None:
    a = parse_address("org/tiny", default_source="huggingface")
    assert a.repo_key == "huggingface/org/tiny"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "huggingface",
        "huggingface/org",
        "nosuch/org/repo",
        "huggingface/org/../etc/passwd",
        "huggingface/org/repo/../../x",
        "huggingface/org/repo/a//b",
        "huggingface/org/./repo",
        "huggingface/org/repo/a\0b",
        "huggingface/org/repo@",
        "huggingface/org/repo@../x/file",
        "huggingface/org/repo@./x/file",
        "huggingface/org/repo@%2e%2e/file",
        "huggingface/org/repo@%2e/file",
        "huggingface/org/repo@refs%2F..%2Fmain",
        "huggingface/org/repo@refs%2F.%2Fpr",
        "huggingface/org/repo@refs%2F%2Fpr",
        "huggingface/org/repo@%2Fmain",
        "huggingface/org/repo@main%2F",
        "huggingface/org/repo@main%0d%0aX:1",
        "huggingface/org/repo@main%7f",
    ],
)
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(text)


def test_long_segment() -> None:
    with pytest.raises(NameTooLong):
        parse_address("huggingface/org/repo/" + "x" * 256)
    parse_address("huggingface/org/repo/" + "x" * 255)


def test_prefix() -> None:
    assert parse_prefix("") == ()
    assert parse_prefix("huggingface/org/") == ("huggingface", "org")
    with pytest.raises(InvalidAddress):
        parse_prefix("bogus")


@pytest.mark.parametrize("rev", ["main", "v1.0", "refs/pr/1", "refs/convert/parquet", "0" * 40, "feature..x", ".hidden"])
def test_good_revisions(rev: str) -> None:
    assert check_revision(rev) == rev
    assert parse_address(f"huggingface/org/repo@{rev.replace('/', '%2F')}/f").revision == rev


@pytest.mark.parametrize("rev", ["", ".", "..", "refs/pr/..", "./main", "a//b", "/main", "main/", "a\0b", "a\nb",
                                 "x" * 256])
def test_bad_revisions(rev: str) -> None:
    with pytest.raises(InvalidAddress):
        check_revision(rev)
