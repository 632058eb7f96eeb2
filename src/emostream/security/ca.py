"""The cluster's certificate authority, as the security commands see it.

The CA itself lives in :mod:`emostream.cluster.tls` (a secure cluster needs it to start, and
dependencies point from features to the cluster, never back); these names stay importable here.
"""

from emostream.cluster.private import private_dir, write_private
from emostream.cluster.tls import BROKER_CN, BROKER_OU, DEVICE_OU, ORG, CertificateAuthority, CertInfo, describe

__all__ = ["BROKER_CN", "BROKER_OU", "DEVICE_OU", "ORG", "CertInfo", "CertificateAuthority", "describe", "private_dir",
           "write_private"]
