"""cgroup path → container id and runtime, over every layout the runtimes produce.

Cases are upstream's own test inputs (facts, not code), with where each was
seen; Datadog's expectations are full ids, Tetragon's the first 31 characters
and Falco's the first 12 of the same full id, which is what Vigil reports:

- DD-H   DataDog/datadog-agent pkg/security/secl/containerutils/helpers_test.go
         @ 420f32a0552c8ccde3fc8f34bdcb5e62de33641e
- DD-C   DataDog/datadog-agent pkg/security/utils/cgroup_test.go @ 32eb0d025998f93de590c914e948896ee0d43c40
- DD-R   DataDog/datadog-agent pkg/util/cgroups/readerv1_test.go
         @ 25c073503a68fd7061386fc3c079954bfabf79a1 and readerv2_test.go
         @ 6bdf958c52185e86a79990c60cc03bcd9990307f
- TG-P   cilium/tetragon pkg/sensors/exec/procevents/proc_test.go @ 4fbfe2d74ecb84acf79ed09a416f01b54185e8a6
- TG-R   cilium/tetragon pkg/rthooks/args_test.go @ 4fbfe2d74ecb84acf79ed09a416f01b54185e8a6
- FL-E   falcosecurity/libs test/libsinsp_e2e/container/container_cgroup.cpp @ 9ab23531a0df82e81762ed26bf2462f83c6fa1f3
- FP-M   falcosecurity/plugins plugins/container/test/matchers.cpp @ 0b3cbd8d84eba83877159cf3c9fdae1820084c26
- SEEN   seen on these machines (../shared/notes/containers-on-these-machines.md) and by tests/kernel

Where Vigil differs from one upstream on purpose, the row says so: Tetragon's
leaf-only lookup (``procsFindDockerId``) returns nothing for a process in a
sub-cgroup of a container (``docker-<id>.scope/init.scope``); its walk-parent
lookup and Datadog return the container, and so does Vigil (a process in a
container's sub-cgroup is that container's). Falco accepts non-hex containerd
ids (``/default/test_container``); Vigil requires the 64-hex ids Kubernetes,
docker, nerdctl and podman use, so a host path like ``/libpod_parent/conmon``
is never taken for a container.
"""

from __future__ import annotations

import pytest

from collector.identity import ANY, container_id, looks_like_container, match, runtime_of

# Ids from the upstream cases.
C40 = "c40dff48f1d53c3f07a50aa12bb9ae0e58c0927dc6b1d77e3f166784722642ad"
E8A = "e8ac3efec3322d7f13cfa0cdee4344754d01bd4e50fea44e0753e83fdb74cab3"
D99 = "99d24a208bd5b9c9663e18c34e4bd793536f062d8299a5cca0e718994abd9182"
D47 = "473a28bd49fcbf3a24eb55563125720311181ee184ae9b88fc9a3fbb30031e47"
F70 = "7022ec9d5774c69f38feddd6460373c4681ef72a4e03bc6f2d374387e9bde981"
R23 = "2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc40"
R41 = "2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc41"
R42 = "2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc42"
P6D = "6dc3fdffbf66b1239d55e98da9aaa759ea51ed35d04eb09d19ebd78963aa26c2"
D15 = "1575e8b4a92a9c340a657f3df4ddc0f6a6305c200879f3898b26368ad019b503"
F24 = "f246d96ff6bd76f65c4a687ce17812a8189b735fd6ed643165db2c61e19bc31e"
AE7 = "ae7a1981e064c217035e0b23979c8defd51c850d1af26fbcf148187e5b0da61c"
G91 = "91f2457fb4c2b1356eefc7bace36532f5eb3d354804bb2cff787ea321320b5a5"
S56 = "5694f82f44168cc048e014ae14d1b0c8ef673bec49f329dc169911ea638f63c2"
EE4 = "ee40841f79d52f66f4958c8a484bd2dfb453228874dcca1a3f2ec6e8420ec87c"
A5A = "5aaf9eb7648eeb1459d86eaa0ace8bcfa93089642e5c3113a14250dae3238aaf"
U6F = "6fb480da903b96185cd497db694641d13534e2b80cf4cb738b6691677146adea"
M89 = "89e89703fbd1e88b72d279d951ce389d3742874205196d73f96e0dcbc0da0659"
L01 = "01f3c60cfaadbb51e4d5947dd2ef0480d53551cbcee8f3ada8c3723b2bf03bf4"
K1B = "1b3319ed9c1d4cca681f9c102da9b015555785b6240c4e4619f11b535cabdc07"
K84 = "84e9ffffe97fea4c5a0f01d401611cbafbf7e559fc6190ed74abfc2b25e889d4"
K94 = "94acc75af8cf9c56e10676b0760ed424bec95dadc91f68f6564014686930200e"
KA5 = "a5a6a3af5d51ad95b915ca948710b90a94abc279e84963b9d22a39f342ce67d9"
KC1 = "c1146e7ccca9ab4436abd69923c07d097b37b762ed21cc3f24584c2f84e77c57"
KB0 = "b0e6aa50e847c3d3b1880e307ec7996040275c8063832cffc9274defce2cb655"
K21 = "21e677e6fe95215ea48bcb5609c10e67ba8e76a7a3ea749af704e72260eb93fe"
C0C = "0ca2b3cd20e5f55a2bbe8d4aa3f811cf7963b40f0542ad147054b0fcb60fc400"
AEC = "ec5fd62ba68d0b75a3cbdb7f7f78b526440b7969e22b2b362fb6f429ded42fdc"
TF5 = "f52a212505a606972cf8614c3cb856539e71b77ecae33436c5ac442232fbacf8"
TA4 = "a4d6b686848a610472a2eed3ae20d4d64b6b4819feb9fdfc7fd7854deaf59ef3"
TBA = "bacb920470900725e0aa7d914fee5eb0854315448b024b6b8420ad8429c607ba"
F60 = "605439acbd4fb18c145069289094b17f17e0cfa938f78012d4960bc797305f22"
F73 = "73bfe475650de66df8e2affdc98d440dcbe84f8df83b6f75a68a82eb7026136a"
F17 = "17d8c9eacc629f9945f304d89e9708c0c619649a484a215b240628319548a09f"
F79 = "7951fb549ab99e0722a949b6c121634e1f3a36b5bacbe5392991e3b12251e6b8"
FD5 = "d52db56a9c80d536a91354c0951c061187ca46249e64865a12703003d8f42366"
H12 = "1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef"
H9C = "9cc35a907a1e4e7ac8c021758b2bb28db60b3a787115f9114a641bf44f8ba99b"
H01 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
CEPH = "/system.slice/system-ceph-f952f5be-565c-11f0-ab72-0affea283157.slice/ceph-f952f5be-565c-11f0-ab72-0affea283157@mon.ip-10-0-25-96.service"  # noqa: E501

# (source, path, container id or None, runtime)
CASES = [
    # --- containerd (CRI) -----------------------------------------------------------------
    (
        "DD-H",
        f"/kubepods.slice/kubepods-pod48d25824_cbe2_4fdc_9928_5bb49e05473d.slice/cri-containerd-{C40}.scope",
        C40,
        "containerd",
    ),  # noqa: E501
    (
        "DD-C",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod98005c3b_b650_4efe_8b91_2164d784397f.slice/cri-containerd-{E8A}.scope",
        E8A,
        "containerd",
    ),  # noqa: E501
    (
        "DD-R",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podc704ef4c297ab11032b83ce52cbfc87b.slice/cri-containerd-{R42}.scope",
        R42,
        "containerd",
    ),  # noqa: E501
    (
        "TG-P",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb052b63_ea96_4728_ab4a_64ab3babccd7.slice/cri-containerd-{S56}.scope",
        S56,
        "containerd",
    ),  # noqa: E501
    (
        "TG-R",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod4c9f1974_5c46_44c2_b42f_3bbf0e98eef9.slice/cri-containerd-{TBA}.scope",
        TBA,
        "containerd",
    ),  # noqa: E501
    (
        "TG-P",
        f"/podruntime.slice/containerd.service/kubepods-burstable-pod29349498_197c_4919_b13f_9a928e7d001b.slice:cri-containerd:{C0C}",
        C0C,
        "containerd",
    ),  # noqa: E501
    ("FL-E", f"/kubepods-burstable-podbd12dd3393227d950605a2444b13c27a.slice:cri-containerd:{FD5}", FD5, "containerd"),
    ("FP-M", f"/system.slice/nerdctl-{H01}.scope", H01, "containerd"),
    # --- kubelet's cgroupfs driver: a bare id under kubepods (any CRI runtime) -------------------
    ("TG-P", f"/kubepods/besteffort/pod26ab26cd-6409-443f-a13c-fd6c231207c8/{AE7}", AE7, ANY),
    ("TG-P", f"/kubepods/burstable/pod1399d9c7-c86f-4371-8568-07b3d32258a4/{G91}", G91, ANY),
    ("TG-R", f"/kubepods/besteffort/pod05e102bf-8744-4942-a241-9b6f07983a53/{TF5}", TF5, ANY),
    ("FL-E", f"/kubepods/besteffort/podac04f3f2-1f2c-11e9-b015-1ebee232acfa/{F60}", F60, ANY),
    ("DD-R", f"/kubepods/pod821ad831-6a9a-4970-b623-8cb43cd3462d/{F24}", F24, ANY),
    (
        "DD-R",
        f"/kubepods/kubepods-besteffort/kubepods-besteffort-podb3922967_14e1_4867_9388_461bac94b37e/{R41}",
        R41,
        ANY,
    ),  # noqa: E501
    (
        "DD-C",
        f"/ecs/409b8b89ccd746bdb9b5e03418406d96/409b8b89ccd746bdb9b5e03418406d96-3057940393/kubepods/besteffort/podc00eb3e2-d6c0-4eb6-9e58-fe539629263f/{F70}",
        F70,
        ANY,
    ),  # noqa: E501
    # --- CRI-O: systemd scope, cgroupfs without .scope; its conmon is not the container ---------
    (
        "DD-R",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podb3922967_14e1_4867_9388_461bac94b37e.slice/crio-{R23}.scope",
        R23,
        "cri-o",
    ),  # noqa: E501
    (
        "FL-E",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod63b3ebfc_2890_11e9_8154_16bf8ef8d9dc.slice/crio-{F17}.scope",
        F17,
        "cri-o",
    ),  # noqa: E501
    ("TG-R", f"/kubepods/besteffort/pod897277d4-5e6f-4999-a976-b8340e8d075e/crio-{TA4}", TA4, "cri-o"),
    ("FL-E", f"/kubepods/besteffort/pod63b3ebfc-2890-11e9-8154-16bf8ef8d9dc/crio-{F73}", F73, "cri-o"),
    ("code", f"/kubepods/besteffort/pod63b3ebfc-2890-11e9-8154-16bf8ef8d9dc/crio-conmon-{F73}", None, None),
    # --- docker: systemd and cgroupfs drivers, cri-dockerd, rootless -----------------------------
    ("DD-C", f"/system.slice/docker-{D47}.scope", D47, "docker"),
    ("TG-P", f"/system.slice/docker-{EE4}.scope", EE4, "docker"),
    ("FL-E", f"/docker.slice/docker-{F79}.scope", F79, "docker"),
    (
        "TG-P",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb052b63_ea96_4728_ab4a_64ab3babccd7.slice/docker-{S56}.scope",
        S56,
        "docker",
    ),  # noqa: E501
    ("DD-C", f"/docker/{D99}", D99, "docker"),
    ("TG-P", f"/docker/{A5A}", A5A, "docker"),
    ("FL-E", f"/docker/{F79}", F79, "docker"),
    ("SEEN", f"/docker/{H01}", H01, "docker"),
    ("TG-P", f"/{A5A}", A5A, ANY),  # plain docker on cgroup v2 with its own cgroup namespace root
    ("TG-P", f"/actions_job/{AEC}", AEC, ANY),  # docker with --cgroup-parent
    # --- podman: cgroupfs (these machines), systemd as root and rootless, --cgroups=split ---------
    ("SEEN", f"/libpod_parent/libpod-{H01}", H01, "podman"),
    ("TG-P", f"/libpod_parent/libpod-{L01}", L01, "podman"),
    ("DD-R", f"/libpod_parent/libpod-{P6D}", P6D, "podman"),
    ("TG-P", f"/machine.slice/libpod-{M89}.scope/container", M89, "podman"),
    ("TG-P", f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{U6F}.scope/container", U6F, "podman"),
    ("FP-M", f"/system.slice/libpod-{H12}", H12, "podman"),
    ("FP-M", f"/system.slice/libpod-{H12}.scope", H12, "podman"),
    ("FP-M", f"/user.slice/user-1000.slice/user@1000.service/libpod-{H12}", H12, "podman"),
    ("FP-M", f"{CEPH}/libpod-payload-{H9C}", H9C, "podman"),
    ("FP-M", f"{CEPH}/libpod-payload-{H9C}.scope", H9C, "podman"),
    ("TG-P", "/libpod_parent/conmon", None, None),  # podman's monitor, cgroupfs
    ("code", f"/machine.slice/libpod-conmon-{M89}.scope", None, None),  # podman's monitor, systemd
    # --- containerd alone (ctr, cgroupfs): /<namespace>/<id> -------------------------------------
    ("SEEN", f"/k8s.io/{H01}", H01, ANY),
    ("SEEN", f"/default/{H01}", H01, ANY),
    # --- nested: the innermost container (kind, minikube, k8s in podman) -------------------------
    (
        "TG-P",
        f"/system.slice/docker-{K1B}.scope/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podeb653d22_2525_47ca_9fc4_3762497ae1d2.slice/docker-{K84}.scope",
        K84,
        "docker",
    ),  # noqa: E501
    (
        "TG-P",
        f"/system.slice/docker-{K94}.scope/kubepods/besteffort/pod13cb8437-00ed-40e4-99d8-e17193a58086/{KA5}",
        KA5,
        ANY,
    ),  # noqa: E501
    (
        "TG-P",
        f"/system.slice/docker-{KC1}.scope/kubelet/kubepods/burstable/pod09a70ae9ccc491e651e5c773579b3490/{KB0}",
        KB0,
        ANY,
    ),  # noqa: E501
    (
        "TG-P",
        f"/system.slice/docker-{KC1}.scope/kubelet/kubepods/pod55db13a1-c151-4cdd-a48b-e002a2b1fb58/{K21}",
        K21,
        ANY,
    ),  # noqa: E501
    (
        "DD-R",
        f"/libpod_parent/libpod-{P6D}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda2acd1bccd50fd7790183537181f658e.slice/docker-{D15}.scope",
        D15,
        "docker",
    ),  # noqa: E501
    # a container's own sub-cgroups are the container's (Tetragon's walk-parent lookup, Datadog)
    ("TG-P", f"/system.slice/docker-{EE4}.scope/init.scope", EE4, "docker"),
    ("TG-P", f"/docker/{A5A}/ns", A5A, "docker"),
    ("TG-P", f"/system.slice/docker-{KC1}.scope/system.slice/containerd.service", KC1, "docker"),
    # --- host cgroups ----------------------------------------------------------------------------
    ("DD-C", "/system.slice/cups.service", None, None),
    ("DD-C", "/user.slice/user-1000.slice/user@1000.service/xdg-desktop-portal-gtk.service", None, None),
    ("DD-C", "/init.scope", None, None),
    ("DD-C", "/", None, None),
    ("DD-C", "/system.slice/ssh.service", None, None),
    ("DD-C", "/user.slice/user-1000.slice/session-4.scope", None, None),
    ("DD-C", "/../../../../kuberuntime.slice/containerd.service", None, None),
    (
        "DD-H",
        "/user.slice/user-1000.slice/user@1000.service/apps.slice/apps-org.gnome.Terminal.slice/vte-spawn-f9176c6a-2a34-4ce2-86af-60d16888ed8e.scope",
        None,
        None,
    ),  # noqa: E501
    ("DD-R", f"/system.slice/run-containerd-io.containerd.runtime.v2.task-k8s.io-{R42}-rootfs.mount", None, None),
    ("DD-R", "/kubepods.slice/kubepods-burstable.slice", None, None),  # QoS level: no container
    ("FP-M", "/user.slice/user-1000.slice/user@1000.service/init.scope", None, None),
    ("FP-M", f"/user.slice/user-1000.slice/user@1000.service/libpod-{H12}{H12}", None, None),  # id too long
    ("FP-M", f"/user.slice/user-1000.slice/user@1000.service/libpod-{H12}g", None, None),  # not hex
    ("FP-M", "/default/some_short_id.service", None, None),
    ("FP-M", "/default/test_container", None, None),  # Falco: a container; Vigil: 64-hex ids only (above)
    ("code", f"/system.slice/docker-{H01[:12]}.scope", None, None),  # a short id is no container scope
]


@pytest.mark.parametrize(("source", "path", "cid", "runtime"), CASES, ids=[f"{c[0]}:{c[1][-40:]}" for c in CASES])
def test_container_id_and_runtime_from_cgroup_path(source: str, path: str, cid: str | None, runtime: str) -> None:
    assert container_id(path) == cid
    assert runtime_of(path) == runtime


def test_containerd_namespace_is_kept() -> None:
    found = match(f"/k8s.io/{H01}")
    assert found is not None and (found.namespace, found.layout) == ("k8s.io", "/<namespace>/<id>")


UNKNOWN_LAYOUTS = [
    f"/vigil-test.slice/sandboxed-runtime-{H01}.scope",  # a runtime Vigil does not know
    f"/garden/weird_{H01}",
    "/kubepods/besteffort/pod26ab26cd-6409-443f-a13c-fd6c231207c8/short-id",
]
NOT_CONTAINER_LIKE = [
    "/system.slice/ssh.service",
    "/libpod_parent/conmon",
    f"/machine.slice/libpod-conmon-{M89}.scope",
    f"/system.slice/run-containerd-io.containerd.runtime.v2.task-k8s.io-{R42}-rootfs.mount",
    f"/docker/{D99}",  # matched: a container, so not "unknown"
]


@pytest.mark.parametrize("path", UNKNOWN_LAYOUTS)
def test_paths_that_look_like_a_container_but_match_no_layout_are_flagged(path: str) -> None:
    assert container_id(path) is None and looks_like_container(path)


@pytest.mark.parametrize("path", NOT_CONTAINER_LIKE)
def test_host_and_matched_paths_are_not_flagged(path: str) -> None:
    assert not looks_like_container(path)
