import pytest

from tests.unit.synthetic import write_blobs


@pytest.fixture(scope="session")
def blobs_root(tmp_path_factory):
    """A data root holding the tiny synthetic dataset as ``glyphs`` (read-only for every test)."""
    root = tmp_path_factory.mktemp("data")
    write_blobs(root / "glyphs")
    return root
