"""The proxy's key check (LiteLLM general_settings.custom_auth), beside router.yaml.

Without a database LiteLLM answers a wrong key with 400 "No connected db." (it looks the key up
as a virtual key); clients then report a bad request instead of a bad key. This hook answers
every route LiteLLM authenticates: the proxy key (LITELLM_PROXY_KEY, from env.local) is accepted,
compared in constant time; anything else, missing or malformed, is refused with 401 and an
OpenAI-style error body. The key itself is never logged or echoed.
"""

import hmac
import os

from fastapi import HTTPException, Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

_PROXY_KEY = os.environ["LITELLM_PROXY_KEY"].encode()


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    given = (api_key or "").encode()
    if given and hmac.compare_digest(given, _PROXY_KEY):
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    raise HTTPException(status_code=401, detail="Invalid proxy key: send Authorization: Bearer <LITELLM_PROXY_KEY>")
