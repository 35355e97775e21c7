"""reconciler: a declarative, GitOps-style reconciler for libvirt virtual machines."""

__version__ = "0.1.0"
