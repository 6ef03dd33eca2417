import pytest

from kdfair_cli.data import registry


@pytest.fixture
def blobs(monkeypatch, tmp_path):
    """Register the in-memory 'blobs' dataset; returns a data path to pass as --data."""
    monkeypatch.setitem(registry.DATASETS, "blobs", "tests.fakes:open_blobs")
    monkeypatch.setitem(registry.DATASETS, "blobs-noval", "tests.fakes:open_blobs_noval")
    return str(tmp_path)
