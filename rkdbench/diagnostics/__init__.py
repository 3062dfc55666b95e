"""Optional diagnostics of a trained student beyond the protocol's accuracies: expected calibration error and robust
accuracy as eps grows (`diagnose`), and student specialization, how closely each teacher unit is mirrored by a student
unit (`specialization`, over the stages `stages` finds).
"""
