"""IIS client-certificate mapping: desired state, mapping rules, the SSM document, the manual appcmd equivalent, the BeaconMtls component and the static Windows scripts."""
