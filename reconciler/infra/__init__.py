"""Networks and storage pools: the infrastructure VMs use, declared like VMs."""
