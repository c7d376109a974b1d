import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_dir():
    return pathlib.Path(os.environ.get("ROPESCALE_TEST_DATA_DIR", ROOT / "tests" / "data"))
