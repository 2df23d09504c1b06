"""A second deploy right after the first changes nothing on any host (lab only: it deploys)."""

import pytest

from .labdeploy import changed_rows, grand_total, lab_deploy


@pytest.mark.lab_only
def test_second_deploy_changes_nothing(lab_state, timings):
    code, text, seconds = lab_deploy()
    timings["converged re-run (both hosts)"] = seconds
    assert code == 0, text[-3000:]
    total = grand_total(text)
    assert total["changed"] == 0 and total["errors"] == 0, "changed:\n" + "\n".join(changed_rows(text))
    assert total["unchanged"] == total["operations"]
