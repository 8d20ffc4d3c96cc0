"""ledgerfence for upstream Nova.

``ledgerfence_nova.filter.LedgerfenceFilter`` is a Nova scheduler filter that
sends every scheduling pass's candidate hosts to ledgerfence's filterd (the
SAP/cortex external-scheduler webhook body) and keeps only the hosts filterd
returns, so a VM is never placed on, or moved to, a host its regulation does
not allow.
"""
