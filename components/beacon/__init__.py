"""The Windows beacon hosts: host policy (IAM, security group, instance settings) and the BeaconHost component."""
