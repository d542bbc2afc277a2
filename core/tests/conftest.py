import pytest

pytest_plugins = ["pgserver"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
