"""What a saved plan's fingerprint covers (core.scope), on planned cases: exactly what the plan
read about its own objects; capacity facts only through the decisions made from them."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plan"))

from planbuild import run_case

from reconciler.core import render, scope

BASE: dict[str, Any] = {
    "desired": [
        {"name": "a", "vcpus": 1, "memory": "512MiB",
         "disks": [{"name": "root", "size": "8GiB", "format": "raw", "image": "base.raw"}],
         "networks": [{"network": "default", "mac": "52:54:00:00:00:01"}]},
        {"name": "b", "vcpus": 1, "memory": "512MiB"},
    ],
    "storage": {"volumes": {"default": [{"name": "base.raw", "capacity": "6GiB",
                                         "format": "raw"}]},
                "available": {"default": "10GiB"}},
    "free_memory": "2GiB",
}


def case(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        out[key] = value
    return out


def refusals(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return scope.refusals(render.plan_json(run_case(saved), instance="default"),
                          render.plan_json(run_case(now), instance="default"))


def test_free_memory_and_pool_space_that_still_fit_do_not_invalidate() -> None:
    assert refusals(case(), case(free_memory="1100MiB")) == []
    storage = copy.deepcopy(BASE["storage"])
    storage["available"] = {"default": "7GiB"}
    assert refusals(case(), case(storage=storage)) == []
    assert run_case(case()).fingerprint == run_case(case(free_memory="3GiB")).fingerprint


def test_a_start_that_no_longer_fits_refuses_the_plan_naming_it() -> None:
    why = refusals(case(), case(free_memory="700MiB"))
    assert why == ["b: planned `+ 1 vcpu, 512MiB`, now `! blocked: the host has 700MiB of memory "
                   "free, and the VMs this plan starts need 1GiB (each its memory); stop a VM or "
                   "give less memory`"]


def test_a_copy_that_no_longer_fits_refuses_the_plan_naming_it() -> None:
    storage = copy.deepcopy(BASE["storage"])
    storage["available"] = {"default": "5GiB"}
    why = refusals(case(), case(storage=storage))
    assert len(why) == 1 and why[0].startswith("a: planned `+ 1 vcpu"), why
    assert "now `! blocked: pool default has 5GiB free" in why[0]


def test_other_domains_volumes_and_networks_do_not_count() -> None:
    storage = copy.deepcopy(BASE["storage"])
    storage["volumes"]["default"].append({"name": "other-root", "capacity": "1GiB"})
    storage["users"] = {"default/other-root": ["other"]}
    storage["files"] = {"/pools/default/base.raw": ["other"]}  # a guest made from the image
    busy = case(storage=storage, live=[{"name": "other", "managed": False,
                                        "spec": {"vcpus": 1, "memory": "64MiB"}}])
    assert refusals(case(), busy) == []


def test_a_domain_that_takes_a_planned_name_refuses_the_plan() -> None:
    taken = case(live=[{"name": "b", "managed": False}])
    why = refusals(case(), taken)
    assert "vm b appeared" in why
    assert any(w.startswith("b: planned `+ 1 vcpu, 512MiB`, now `! conflict") for w in why), why


def test_its_own_volume_and_mac_count() -> None:
    storage = copy.deepcopy(BASE["storage"])
    storage["volumes"]["default"].append({"name": "a-root", "capacity": "1GiB"})
    assert "volume default/a-root appeared" in refusals(case(), case(storage=storage))
    other = case(live=[{"name": "other", "managed": False, "spec": {
        "vcpus": 1, "memory": "64MiB",
        "networks": [{"network": "default", "mac": "52:54:00:00:00:01"}]}}])
    assert "mac 52:54:00:00:00:01 appeared" in refusals(case(), other)


def test_a_manifest_edit_is_named() -> None:
    edited = copy.deepcopy(BASE)
    edited["desired"][1]["vcpus"] = 2
    assert "manifest vm b changed" in refusals(case(), edited)


def test_a_plan_for_another_instance_is_refused() -> None:
    doc = render.plan_json(run_case(case()), instance="default")
    assert scope.refusals(doc, {**doc, "instance": "other"}) == [
        "it was made for instance 'default', not 'other'"]


def test_a_network_retry_depends_on_the_network_not_a_domain_of_its_name() -> None:
    from reconciler.shells import accounting

    def network_action(active: bool) -> Any:
        plan = run_case({"networks": {"desired": [{"name": "lab", "forward": "nat"}],
                                      "live": [{"name": "lab", "active": active,
                                                "spec": {"forward": "none"}}]}})
        return next(a for a in plan.actions if a.label == "network/lab")

    action = network_action(True)
    # Another tenant's VM named lab changes: the network's retry key stays.
    assert (accounting.inputs_key(action, {"lab": "one"})
            == accounting.inputs_key(action, {"lab": "two"}))
    # The network itself changes: it is tried again.
    assert accounting.inputs_key(action, {}) != accounting.inputs_key(network_action(False), {})
