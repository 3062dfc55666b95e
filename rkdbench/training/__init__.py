"""Training one student: the `Trainer` loop that runs any method's contract (`engine`), what a run is made of apart from
its loop (`setup`: device, optimizer, schedule, validation PGD, the outcome), stochastic weight averaging (`swa`),
opt-in `torch.compile` (`compiling`), and atomic, sha256-checked checkpoints loaded with `weights_only=True`
(`checkpoint`).
"""
