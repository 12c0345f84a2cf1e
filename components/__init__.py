"""flexnet-beacon: Pulumi components and the pure decisions they are built from."""
