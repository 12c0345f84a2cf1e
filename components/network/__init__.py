"""The dedicated VPC: subnet layout, egress allowlist, firewall rules, and the VPC and Network Firewall components."""
