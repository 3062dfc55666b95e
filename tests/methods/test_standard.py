"""`standard`: clean CE, no attack, no teacher."""

import pytest

from rkdbench import Outputs
from rkdbench.errors import ConfigError
from rkdbench_plugins.methods.standard import Standard


def test_standard_contract_and_loss(hand):
    m = Standard()
    assert m.needs == {"s_nat"} and m.attack is None and not m.uses_teacher
    expected = sum(hand.ce(r, y) for r, y in zip(hand.rows(hand.S_NAT), hand.Y.tolist())) / hand.B
    assert float(m.loss(Outputs(s_nat=hand.S_NAT), hand.Y, hand.P).total) == pytest.approx(expected, rel=1e-6)


def test_standard_has_no_attack_to_override():
    with pytest.raises(ConfigError, match="no training attack"):
        Standard(attack_steps=3)
