"""Attack machinery the host and attack plugins share: the `Attack` base (threat model, seed, typed options, the input
checks and RNG isolation third-party attacks need), the `AttackTraits` an attack declares so that the host never names
one (`traits`, torch-free), and `pgd`, the one projected-gradient primitive behind every training attack and the
`pgd`/`cw` evaluation attacks.
"""
