from conftest import run_cli, vm_manifest, write_manifest


def test_create_one_vm(host, tmp_path):
    net = host.network()
    name = f"{host.prefix}a"
    write_manifest(tmp_path, "a.yaml", vm_manifest(
        name, vcpus=1, max_vcpus=2, disks="- {name: root, size: 16MiB}",
        networks=f"- network: {net}"))
    r = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir", tmp_path / "state",
                tmp_path)
    print(r.stdout, r.stderr)
    assert r.code == 0
    assert host.domain(name).isActive()
    r = run_cli("plan", "--detailed-exitcode", "--connect", host.uri, tmp_path)
    print(r.stdout, r.stderr)
    assert r.code == 0
