"""placeholder"""


async def run(env):
    raise NotImplementedError
