"""Measuring a trained model under the protocol: clean accuracy and every `[eval.attacks]` entry on the fixed test
points, in resumable chunks (`evaluate`), the evaluation batch size (`batching`), the flags that say a number should not
be trusted (`flags`), and what every evaluated selection gets from its per-example results: worst-class accuracy
(`worst_class`), student-to-teacher transferability (`transfer`), both gathered by `selection_metrics`.
"""
