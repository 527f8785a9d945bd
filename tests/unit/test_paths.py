"""Path generalisation: the shared segment rules (random names), vArmor's tree rules for the
AppArmor profile (ported from its own tests), and where Vigil deliberately differs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import paths as shared
from services.audit_report_writer.paths import generalise, is_library
from services.profile_learner.paths import generalise_path

# --- random names: one deterministic rule (contracts/paths.py) ---------------------------------------
# vArmor sends every path to its classifier (cmd/classifier/app/api/path.py @ bytedance/vArmor
# 82baa150f625: stringlifier's RANDOM_STRING, NUMERIC, UUID, IP_ADDR, JWT → the segment becomes *).
# Vigil's rule is on character classes, length and entropy instead; these are the names it must
# absorb, and the words it must leave alone. (generator, path, generalised by the learner)
RANDOM_NAMES = [
    ("mktemp(1)", "/tmp/tmp.Q2xk8PzA1b", "/tmp/tmp.*"),
    ("mktemp(1), letters only", "/tmp/tmp.aBcDeFgHiJ", "/tmp/tmp.*"),
    ("PHP upload (LID-DS Apache/PHP)", "/tmp/phpA1b2C3", "/tmp/php*"),
    ("PHP upload, letters only", "/tmp/phpAbCdEf", "/tmp/php*"),
    ("Python tempfile.mkstemp", "/tmp/tmpq8x_6zbl", "/tmp/tmp*"),
    ("Python NamedTemporaryFile(suffix)", "/var/tmp/tmpab12cd34.json", "/var/tmp/tmp*.json"),
    ("Python TemporaryDirectory", "/tmp/tmpq8x_6zbl/out.json", "/tmp/tmp*/out.json"),
    ("gcc", "/tmp/ccAbC123.s", "/tmp/cc*.s"),
    ("Java File.createTempFile", "/tmp/upload8245136247264851731.tmp", "/tmp/upload*.tmp"),
    ("Java (Tomcat multipart)", "/tmp/upload_1e8d8a0c_4b6f_4c1e_9b8e_0c7e6c5f1a2b_00000001.tmp", "/tmp/upload_*_*.tmp"),
    ("Go os.CreateTemp", "/tmp/app-1234567890.json", "/tmp/app-*.json"),
    ("Go os.MkdirTemp (go build)", "/tmp/go-build1234567890/b001/exe/main", "/tmp/go-build*/b001/exe/main"),
    ("Go t.TempDir", "/tmp/TestUpload1234567890/001", "/tmp/TestUpload*/*"),
    (
        "sha256 (overlay2 layer)",
        "/var/lib/docker/overlay2/" + "3f2a9c1b" * 8 + "/merged/etc/hosts",
        "/var/lib/docker/overlay2/*/merged/etc/hosts",
    ),
    (
        "build id",
        "/usr/lib/debug/.build-id/ab/cdef0123456789abcdef0123456789abcdef01.debug",
        "/usr/lib/debug/.build-id/ab/*.debug",
    ),
    ("Go build cache", "/root/.cache/go-build/3f/" + "3f2a9c1b7d4e" * 5 + "-d", "/root/.cache/go-build/3f/*-d"),
    (
        "Nix store hash",
        "/nix/store/0c5p3kxy6mr1ba3w4sdbgl3hz5c2lbqa-bash-5.2/bin/bash",
        "/nix/store/*-bash-5.2/bin/bash",
    ),
    ("JWT-looking name", "/data/eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.json", "/data/*.json"),
    ("UUID", "/var/lib/kubelet/pods/123e4567-e89b-12d3-a456-426614174000/volumes", "/var/lib/kubelet/pods/*/volumes"),
    (
        "UUID with underscores",
        "/sys/fs/cgroup/kubepods-pod123e4567_e89b_12d3_a456_426614174000.slice",
        "/sys/fs/cgroup/kubepods-pod*.slice",
    ),
    (
        "kubelet atomic-writer directory",
        "/etc/config/..2024_01_04_18_02_26.3917466241/app.yaml",
        "/etc/config/*/app.yaml",
    ),
    ("date in a log name", "/var/log/app-20240101.log", "/var/log/app-*.log"),
    ("random token", "/home/app/.cache/k2j3h4g5/x", "/home/app/.cache/*/x"),
    ("random token between words", "/run/session-Q2xk8P.sock", "/run/session-*.sock"),
    ("pty", "/dev/pts/0", "/dev/pts/*"),
    # words that must stay words
    ("nginx", "/etc/nginx/conf.d/default.conf", "/etc/nginx/conf.d/default.conf"),
    ("tzdata", "/usr/share/zoneinfo/Europe/Berlin", "/usr/share/zoneinfo/Europe/Berlin"),
    ("tzdata, dashes", "/usr/share/zoneinfo/America/Port-au-Prince", "/usr/share/zoneinfo/America/Port-au-Prince"),
    ("digits in words", "/etc/mysql/utf8mb4.cnf", "/etc/mysql/utf8mb4.cnf"),
    ("an API version", "/etc/kubernetes/v1beta1/x509v3.conf", "/etc/kubernetes/v1beta1/x509v3.conf"),
    ("CamelCase", "/app/classes/com/example/MyClassName.class", "/app/classes/com/example/MyClassName.class"),
    ("CamelCase with digits", "/home/app/ConfigurationManager22.xml", "/home/app/ConfigurationManager22.xml"),
    ("a charset", "/usr/share/i18n/charmaps/GB18030.gz", "/usr/share/i18n/charmaps/GB18030.gz"),
    (
        "bytecode cache",
        "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
        "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
    ),
    ("apache site", "/etc/apache2/sites-enabled/000-default.conf", "/etc/apache2/sites-enabled/000-default.conf"),
    ("words with digits", "/usr/bin/sha256sum", "/usr/bin/sha256sum"),
    ("a word after tmp, outside a temp dir", "/etc/tmpfiles.d/x.conf", "/etc/tmpfiles.d/x.conf"),
    ("php, outside a temp dir", "/usr/share/php/phpmailer/x.php", "/usr/share/php/phpmailer/x.php"),
    ("relative", "relative/123", "relative/123"),
    ("root", "/", "/"),
]


@pytest.mark.parametrize(("path", "expected"), [c[1:] for c in RANDOM_NAMES], ids=[c[0] for c in RANDOM_NAMES])
def test_random_names_become_globs_and_words_stay(path: str, expected: str) -> None:
    assert shared.generalise(path) == expected
    assert generalise_path(path) == expected  # the learner keys file behaviour with this rule


def test_the_random_token_rule_by_its_parts() -> None:
    assert shared.is_random_token("Q2xk8P")  # 3 alternations, mixed case
    assert shared.is_random_token("k2j3h4g5")  # 7 alternations
    assert not shared.is_random_token("utf8mb4")  # 3 alternations, one case: a word
    assert not shared.is_random_token("AbCdEfGh")  # no digit: letters alone never (templates catch temp names)
    assert shared.is_random_token("abcdefgh12ijklmnop")  # 18 characters, 2 alternations, entropy 4.2 bits
    assert shared.entropy("abcdefgh12ijklmnop") >= shared.MIN_ENTROPY_BITS > shared.entropy("aaaaaaaa12bbbbbbbb")
    assert not shared.is_random_token("aaaaaaaa12bbbbbbbb")


# --- vArmor's trimPath, ported ---------------------------------------------------------------------
# Test_trimPath in internal/behavior/preprocessor/apparmor_test.go @ bytedance/vArmor 82baa150f625
# (every case with the denied mask "wr").
VARMOR_TRIMPATH = [
    ("proc_0", "/proc/1", "/proc/*"),
    ("proc_1", "/proc/1/", "/proc/*/"),
    ("proc_2", "/proc/1106048/fdinfo/10", "/proc/*/fdinfo/*"),
    ("proc_3", "/proc/1106110/net/ip6_tables_names", "/proc/*/net/ip6_tables_names"),
    ("proc_4", "/proc/1106048/task/10", "/proc/*/task/*"),
    ("proc_5", "/proc/9/fd/107", "/proc/*/fd/*"),
    ("proc_6", "/proc/1106048/mountinfo", "/proc/*/mountinfo"),
    ("proc_7", "/proc/1106048/fdinfo/10", "/proc/*/fdinfo/*"),
    ("proc_8", "/proc/122/map_files", "/proc/*/map_files"),
    ("proc_9", "/proc/122/map_files/5565eaa95000-5565eaac3000", "/proc/*/map_files/*"),
]


@pytest.mark.parametrize(("path", "expected"), [c[1:] for c in VARMOR_TRIMPATH], ids=[c[0] for c in VARMOR_TRIMPATH])
def test_varmor_trim_path(path: str, expected: str) -> None:
    assert generalise(path, "rw") == expected


# The rules trimPath states in internal/behavior/preprocessor/preprocessor.go @ bytedance/vArmor
# 82baa150f625 (its comments give the /tmp and snapshot examples): (path, access, generalised).
VARMOR_RULES = [
    ("/tmp", "r", "/tmp"),
    ("/tmp/", "rw", "/tmp/"),
    ("/tmp/dwda.lgo", "rw", "/tmp/**"),
    ("/tmp/dw/fw.log", "w", "/tmp/**"),
    ("/tmp/dw/fw.log", "r", "/tmp/**"),
    ("/tmp/tmpq8x_6zbl/out.json", "w", "/tmp/**"),
    ("/var/run/secrets/kubernetes.io/serviceaccount/token", "r", "/var/run/secrets/kubernetes.io/serviceaccount/**"),
    (
        "/var/run/secrets/kubernetes.io/serviceaccount/..2024_01_04_18_02_26.3917466241/token",
        "r",
        "/var/run/secrets/kubernetes.io/serviceaccount/**",
    ),
    ("/run/secrets/kubernetes.io/serviceaccount/namespace", "r", "/run/secrets/kubernetes.io/serviceaccount/**"),
    ("/lib/x86_64-linux-gnu/libc.so.6", "mr", "/lib/x86_64-linux-gnu/**"),
    ("/usr/lib/x86_64-linux-gnu/libidn2.so.0.3.4", "mr", "/usr/lib/x86_64-linux-gnu/**"),
    ("/usr/lib/aarch64-linux-gnu/gconv/gconv-modules", "r", "/usr/lib/aarch64-linux-gnu/**"),
    ("/usr/lib/x86_64-linux-gnu/", "r", "/usr/lib/x86_64-linux-gnu/"),  # the directory itself
    ("/usr/lib/x86_64-linux-gnu/libfoo.so", "w", "/usr/lib/x86_64-linux-gnu/libfoo.so"),  # not read-only
    ("/usr/lib/x86_64-linux-gnu/libfoo.so", "a", "/usr/lib/x86_64-linux-gnu/libfoo.so"),
    (
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/86/fs/etc/nginx/geoip/",
        "r",
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/etc/nginx/geoip/",
    ),
    (
        "/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/149/fs/etc/",
        "r",
        "/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/etc/",
    ),
]


# --- where Vigil deliberately differs (docs/models.md, "Path generalisation") ----------------------
VIGIL_DIFFERENCES = [
    # read-only trees below every library root, not only the architecture directories (vArmor: literal)
    ("/usr/lib/python3.11/os.py", "r", "/usr/lib/python3.11/**"),
    ("/usr/lib/python3.11/__pycache__/os.cpython-311.pyc", "r", "/usr/lib/python3.11/**"),
    ("/usr/local/lib/node_modules/npm/index.js", "r", "/usr/local/lib/node_modules/**"),
    ("/lib64/ld-linux-x86-64.so.2", "mr", "/lib64/**"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/lib/modules", "r", "/usr/lib/jvm/**"),
    # per-pod and per-container ids under /var/lib and /sys (vArmor keeps those trees literal)
    ("/var/lib/kubelet/pods/123e4567-e89b-12d3-a456-426614174000/volumes", "r", "/var/lib/kubelet/pods/*/volumes"),
    (
        "/sys/fs/cgroup/kubepods.slice/kubepods-pod123e4567_e89b_12d3_a456_426614174000.slice/cpu.max",
        "r",
        "/sys/fs/cgroup/kubepods.slice/kubepods-pod*.slice/cpu.max",
    ),
    # executed, or mapped executable outside the library directories: never a tree glob
    ("/tmp/payload", "rix", "/tmp/payload"),
    ("/tmp/jna8245136247264851731.tmp", "mr", "/tmp/jna*.tmp"),
    ("/usr/lib/x86_64-linux-gnu/helper", "ix", "/usr/lib/x86_64-linux-gnu/helper"),
    (
        "/var/run/secrets/kubernetes.io/serviceaccount/run.sh",
        "ix",
        "/var/run/secrets/kubernetes.io/serviceaccount/run.sh",
    ),
]


@pytest.mark.parametrize(
    ("path", "perms", "expected"),
    VARMOR_RULES + VIGIL_DIFFERENCES,
    ids=[f"varmor {p} {a}" for p, a, _ in VARMOR_RULES] + [f"vigil {p} {a}" for p, a, _ in VIGIL_DIFFERENCES],
)
def test_tree_rules_by_access(path: str, perms: str, expected: str) -> None:
    assert generalise(path, perms) == expected


def test_the_learner_stays_finer_than_the_profile() -> None:
    """The learner takes the segment rules but no tree glob: what a workload writes under /tmp is
    keyed per (generalised) name, so executing it later is still something new (docs/profiles.md)."""
    assert generalise_path("/tmp/dw/fw.log") == "/tmp/dw/fw.log" != generalise("/tmp/dw/fw.log", "w")
    assert generalise_path("/usr/lib/x86_64-linux-gnu/libc.so.6") == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert generalise_path("/tmp/phpA1b2C3") == generalise_path("/tmp/phpZz9Yx8") == "/tmp/php*"


def test_library_paths_are_mapped() -> None:
    assert is_library("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    assert not is_library("/usr/libexec/foo")
    assert not is_library("/etc/ld.so.cache")


_segment = st.text(alphabet="abcXYZ0123456789-._", min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
_root = st.sampled_from(["", "/tmp", "/proc", "/usr/lib", "/var/run/secrets/kubernetes.io/serviceaccount"])


@given(_root, st.lists(_segment, min_size=1, max_size=6), st.sampled_from(["r", "rw", "a", "mr", "rix"]))
def test_idempotent_and_absolute(root: str, segments: list[str], perms: str) -> None:
    path = root + "/" + "/".join(segments)
    once = generalise(path, perms)
    assert once.startswith("/")
    assert generalise(once, perms) == once
    assert once.count("/") == path.count("/") or once.endswith("/**")
    learned = generalise_path(path)
    assert generalise_path(learned) == learned and learned.count("/") == path.count("/")
