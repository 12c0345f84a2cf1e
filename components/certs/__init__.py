"""Certificates: X.509 facts, trust classification and CRL egress, the IIS acceptance verdict, lab CRL hosting."""
