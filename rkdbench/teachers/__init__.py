"""Teachers: the torch-free `TeacherCard` a teacher plugin registers and the model dir (`card`), RobustBench's file
layout, measured cards and trust-on-first-use hashes (`model_dir`), verified loading (`load`), building harness teachers
from their recipe (`build`), a teacher's measured accuracy for the leaderboard's gap column (`accuracy`), and fetching
zoo teachers through the optional robustbench package (`robustbench_bridge`).
"""
