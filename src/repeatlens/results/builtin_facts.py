"""The built-in scores' facts (:class:`repeatlens.results.metric_facts.MetricFacts`), for readers that do not
import the scores (and so torch): GENERATED from their ``@register`` lines, do not edit. Regenerate with

    python -c 'from repeatlens.scores.registry import write_facts_snapshot; write_facts_snapshot()'
"""

from typing import Any

FACTS: dict[str, dict[str, Any]] = {
    'previous_token': {'label': 'previous-token score', 'unit': 'attention', 'range': [0.0, 1.0], 'higher_is_better': True, 'chance': 'uniform_attention', 'level': True},
    'duplicate_token': {'label': 'duplicate-token score', 'unit': 'attention', 'range': [0.0, 1.0], 'higher_is_better': True, 'chance': 'uniform_attention', 'level': True},
    'induction': {'label': 'induction score', 'unit': 'attention', 'range': [0.0, 1.0], 'higher_is_better': True, 'chance': 'uniform_attention', 'level': True},
    'prefix_matching': {'label': 'prefix-matching score', 'unit': 'attention', 'range': [0.0, 1.0], 'higher_is_better': True, 'chance': 'uniform_attention', 'level': True},
    'offset_profile': {'label': 'attention by query-key offset', 'unit': '', 'range': [0.0, 1.0], 'higher_is_better': None, 'chance': None, 'level': False},
    'shifted_induction': {'label': 'shifted-induction score', 'unit': 'attention at offset L−1−d', 'range': [0.0, 1.0], 'higher_is_better': True, 'chance': 'uniform_attention', 'level': True},
    'shifted_induction_shift': {'label': 'shift d of the best induction-like offset', 'unit': '', 'range': [0.0, None], 'higher_is_better': None, 'chance': None, 'level': False},
    'copying_loss': {'label': 'copying loss', 'unit': 'nats/token', 'range': [0.0, None], 'higher_is_better': False, 'chance': None, 'level': True},
    'copying_gain': {'label': 'copying gain', 'unit': 'nats/token', 'range': None, 'higher_is_better': True, 'chance': None, 'level': True},
    'icl_score': {'label': 'in-context learning score', 'unit': 'nats/token', 'range': None, 'higher_is_better': False, 'chance': None, 'level': True},
    'test_loss': {'label': 'test loss', 'unit': 'nats/token', 'range': [0.0, None], 'higher_is_better': False, 'chance': None, 'level': True},
    'repeated_loss': {'label': 'repeated-subset loss', 'unit': 'nats/token', 'range': [0.0, None], 'higher_is_better': False, 'chance': None, 'level': True},
    'memorization': {'label': 'memorized fraction of repeated sequences', 'unit': '', 'range': [0.0, 1.0], 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_copying_loss': {'label': 'copying-loss rise when ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_repeated_loss': {'label': 'repeated-loss rise when mean-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_repeated_text_loss': {'label': 'natural-text repeated-loss rise when mean-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_repeated_synthetic_loss': {'label': 'synthetic repeated-loss rise when mean-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_test_loss': {'label': 'test-loss rise when mean-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_test_text_loss': {'label': 'natural-text test-loss rise when mean-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'ablation_test_synthetic_loss': {'label': 'synthetic test-loss rise when mean-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'zero_ablation_repeated_loss': {'label': 'repeated-loss rise when zero-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'zero_ablation_test_loss': {'label': 'test-loss rise when zero-ablated', 'unit': 'nats/token', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'memorization_share': {'label': 'memorization share', 'unit': 'repeated / (repeated + test) ablation cost', 'range': [0.0, 1.0], 'higher_is_better': None, 'chance': None, 'level': True},
    'llc_test': {'label': 'local learning coefficient, test set', 'unit': '', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'llc_repeated': {'label': 'local learning coefficient, repeated subset', 'unit': '', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'copying_ov': {'label': 'OV copying score', 'unit': 'eigenvalues, −1…1', 'range': [-1.0, 1.0], 'higher_is_better': True, 'chance': None, 'level': True},
    'copying_top1': {'label': 'OV copying top-1 rate', 'unit': '', 'range': [0.0, 1.0], 'higher_is_better': True, 'chance': None, 'level': True},
    'copying_top1_se': {'label': 'standard error of the OV copying top-1 rate', 'unit': '', 'range': [0.0, 0.5], 'higher_is_better': None, 'chance': None, 'level': False},
    'k_composition': {'label': 'K-composition', 'unit': 'above random baseline', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'q_composition': {'label': 'Q-composition', 'unit': 'above random baseline', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
    'v_composition': {'label': 'V-composition', 'unit': 'above random baseline', 'range': None, 'higher_is_better': None, 'chance': None, 'level': True},
}
