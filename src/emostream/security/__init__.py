"""Securing the cluster: a small CA, broker TLS, SCRAM users with per-role ACLs and quotas.

``ca`` makes keys and certificates, ``files`` knows where a cluster keeps them, ``listeners``
turns a plaintext node into a secured one (pure), ``roles`` says what each role may do (pure),
``profile`` reads and writes client security profiles, ``users`` manages principals on a
running cluster.
"""
