"""What a plugin author implements and the types it is given: the declarative `Method` contract and the `StepMethod` for
methods that write their own training step, their typed `Params` (checked once, by `build_params`),
`Outputs`/`Progress`/`Losses`/`AttackSpec`/`StepContext`, the loss primitives with every official reduction, the
student's official forward-pass order, and `build`, where a cell's method object is made. Plugins reach these names
through the top-level `rkdbench` namespace.
"""
