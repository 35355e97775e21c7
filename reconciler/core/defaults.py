"""The tool's defaults, each in one place (SPEC section 3; README "Configuration"). The config
file, the command line, the daemon and the pure core all take them from here."""

from __future__ import annotations

CONNECT = "qemu:///system"  # the libvirt URI
INSTANCE = "default"  # this reconciler's name on a shared host
CONFIG_FILE = "/etc/reconciler/config.yaml"
MANIFEST_DIR = "/etc/reconciler/manifests"
STATE_DIR = "/var/lib/reconciler"  # the status file and the writer lock
MAX_DESTROY = 5  # VMs one run may destroy
MAX_MOVES = 5  # VMs one run may move to other hosts (many hosts); the others wait
MIGRATION_TIMEOUT = 3600.0  # seconds a live migration may take before it is aborted
PARALLEL = 4  # actions carried out at once
STORAGE_ROOTS = ("/var/lib/libvirt/images",)  # where StoragePool paths may lie
POOL = "default"  # a disk's storage pool when the manifest names none
RESYNC_INTERVAL = 60.0  # seconds between the daemon's periodic resyncs
DEBOUNCE = 1.0  # seconds of quiet after a file change before the daemon reconciles
METRICS_ADDR = "127.0.0.1:9464"
