import pytest

pytest_plugins = ["chanmux_testservers.postgres"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
