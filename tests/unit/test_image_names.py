"""Image references → (profile name, tag), the name as users write it.

The name is Docker's familiar name (``FamiliarName``); cases from
distribution/reference normalize_test.go (``TestParseRepositoryInfo``,
``TestParseDockerRef``, ``TestParseAnyReference``) and reference_test.go
(``TestReferenceParse``) @ 0965666a6ade2e06035fe352e38344be1e68951a.
The tag is Vigil's profile version: the reference's tag, else its digest
(digest-only references), else ``latest`` (``TagNameOnly``). Where
distribution's ``ParseDockerRef`` drops the tag of a tag+digest reference,
Vigil keeps the tag: the version users name is the tag.
"""

from __future__ import annotations

import pytest

from contracts.workloads import normalize_name, parse_image

DIGEST = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
FFFF = "sha256:" + "f" * 64

# (reference, name, tag)
CASES = [
    # one profile whatever the spelling (TestParseRepositoryInfo: same familiar name)
    ("ubuntu", "ubuntu", "latest"),
    ("library/ubuntu", "ubuntu", "latest"),
    ("docker.io/library/ubuntu", "ubuntu", "latest"),
    ("fooo/bar", "fooo/bar", "latest"),
    ("docker.io/fooo/bar", "fooo/bar", "latest"),
    ("index.docker.io/fooo/bar", "fooo/bar", "latest"),
    ("docker.io/foo", "foo", "latest"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "latest"),
    ("other/library", "other/library", "latest"),
    ("index.docker.io/library/ubuntu-12.04-base", "ubuntu-12.04-base", "latest"),
    ("library/foo/bar", "library/foo/bar", "latest"),  # library/ stays when nested
    ("docker.io/store/foo/bar", "store/foo/bar", "latest"),
    # other registries keep their host (localhost is always one; so is an uppercase first part)
    ("localhost/fooo", "localhost/fooo", "latest"),
    ("localhost/fooo/bar", "localhost/fooo/bar", "latest"),
    ("LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "latest"),
    ("Foo/bar", "Foo/bar", "latest"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "latest"),
    ("example.com:8000/privatebasee", "example.com:8000/privatebasee", "latest"),
    ("gcr.io/library/busybox", "gcr.io/library/busybox", "latest"),  # library/ is Docker Hub's only
    ("test_com/foo", "test_com/foo", "latest"),  # no dot or colon: a Docker Hub namespace
    # tags and digests (TestParseDockerRef, TestReferenceParse)
    ("busybox:latest", "busybox", "latest"),
    ("docker.io/library/busybox:latest", "busybox", "latest"),
    (f"busybox@{DIGEST}", "busybox", DIGEST),  # digest only: the digest is the version
    (f"gcr.io/library/busybox:latest@{DIGEST}", "gcr.io/library/busybox", "latest"),
    ("test:5000/repo:tag", "test:5000/repo", "tag"),
    (f"test:5000/repo@{FFFF}", "test:5000/repo", FFFF),
    (f"test:5000/repo:tag@{FFFF}", "test:5000/repo", "tag"),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo", "5050"),
    ("test.com:5000", "test.com", "5000"),  # no slash: the port is a tag
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io/test.example.com/my-app", "test.example.com"),
    ("lowercase:Uppercase", "lowercase", "Uppercase"),
    (f"[2001:db8::1]:5000/repo:tag@{FFFF}", "[2001:db8::1]:5000/repo", "tag"),
    # what the runtimes report here (tests/kernel)
    ("docker.io/library/nginx:1.25", "nginx", "1.25"),
    ("localhost/vigil-test-podman:1.0", "localhost/vigil-test-podman", "1.0"),
]


@pytest.mark.parametrize(("ref", "name", "tag"), CASES)
def test_reference_to_profile_name_and_tag(ref: str, name: str, tag: str) -> None:
    assert parse_image(ref) == (name, tag)


def test_nginx_spelled_three_ways_is_one_profile() -> None:
    assert {parse_image(r) for r in ("nginx:1.25", "docker.io/library/nginx:1.25", "index.docker.io/nginx:1.25")} == {
        ("nginx", "1.25")
    }


def test_no_tag_can_mean_any_tag() -> None:
    assert parse_image("docker.io/library/nginx", default_tag="") == ("nginx", "")
    assert normalize_name("docker.io/library/nginx") == "nginx"
