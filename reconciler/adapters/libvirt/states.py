"""libvirt's domain states and their reasons, from integer constants to the words of
``reconciler.core.observe`` (virDomainState and virDomain<State>Reason names, in lower case with
spaces: VIR_DOMAIN_PAUSED_FROM_SNAPSHOT is "from snapshot")."""

from __future__ import annotations

import libvirt

from reconciler.core.observe import RUNNING_STATES

UNKNOWN = "unknown"


def _word(constant: str) -> str:
    return constant.lower().replace("_", " ")


_STATES = ("NOSTATE", "RUNNING", "BLOCKED", "PAUSED", "SHUTDOWN", "SHUTOFF", "CRASHED",
           "PMSUSPENDED")
# libvirt's own names of two states (virsh's words): "no state", "shutting down", "shut off".
_STATE_WORDS = {"NOSTATE": "no state", "SHUTDOWN": "shutting down", "SHUTOFF": "shut off"}
STATES: dict[int, str] = {
    getattr(libvirt, f"VIR_DOMAIN_{state}"): _STATE_WORDS.get(state, _word(state))
    for state in _STATES
}

# The reasons of each state, listed by name: a prefix scan would also take flags such as
# VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN. Names this libvirt-python lacks are left out.
_REASON_NAMES = {
    "NOSTATE": ("UNKNOWN",),
    "RUNNING": ("UNKNOWN", "BOOTED", "MIGRATED", "RESTORED", "FROM_SNAPSHOT", "UNPAUSED",
                "MIGRATION_CANCELED", "SAVE_CANCELED", "WAKEUP", "CRASHED", "POSTCOPY",
                "POSTCOPY_FAILED"),
    "BLOCKED": ("UNKNOWN",),
    "PAUSED": ("UNKNOWN", "USER", "MIGRATION", "SAVE", "DUMP", "IOERROR", "WATCHDOG",
               "FROM_SNAPSHOT", "SHUTTING_DOWN", "SNAPSHOT", "CRASHED", "STARTING_UP",
               "POSTCOPY", "POSTCOPY_FAILED", "API_ERROR"),
    "SHUTDOWN": ("UNKNOWN", "USER"),
    "SHUTOFF": ("UNKNOWN", "SHUTDOWN", "DESTROYED", "CRASHED", "MIGRATED", "SAVED", "FAILED",
                "FROM_SNAPSHOT", "DAEMON"),
    "CRASHED": ("UNKNOWN", "PANICKED"),
    "PMSUSPENDED": ("UNKNOWN",),
}
_REASONS: dict[int, dict[int, str]] = {
    getattr(libvirt, f"VIR_DOMAIN_{state}"): {
        getattr(libvirt, f"VIR_DOMAIN_{state}_{name}"): _word(name)
        for name in names if hasattr(libvirt, f"VIR_DOMAIN_{state}_{name}")
    }
    for state, names in _REASON_NAMES.items()
}


def state_word(state: int) -> str:
    """The word of a virDomainState value ("unknown" for one this code does not know)."""
    return STATES.get(state, UNKNOWN)


def reason_word(state: int, reason: int) -> str:
    """The word of a state's reason ("unknown" for one this code does not know)."""
    return _REASONS.get(state, {}).get(reason, UNKNOWN)


def is_running(state: int) -> bool:
    """The domain has a QEMU process: running, blocked, paused or PM-suspended."""
    return state_word(state) in RUNNING_STATES
