"""API token items."""

from __future__ import annotations

from botocore.exceptions import ClientError

from outcall.models import ApiToken
from outcall.store.base import StoreBase, _is_conditional_failure


class TokenItems(StoreBase):
    # ------------------------------------------------------------ API tokens
    def put_token(self, token: ApiToken) -> bool:
        item = {
            "pk": f"TOKEN#{token.token_hash}",
            "sk": "TOKEN",
            "type": "token",
            "gsi1pk": "TOKENS",
            "gsi1sk": f"{token.created_at.isoformat()}#{token.name}",
            **token.model_dump(mode="json", by_alias=True),
        }
        return self._put_new(item)

    def get_token(self, token_hash: str) -> ApiToken | None:
        item = self._get(f"TOKEN#{token_hash}", "TOKEN")
        return ApiToken.model_validate(self._strip(item)) if item else None

    def list_tokens(self) -> list[ApiToken]:
        return [ApiToken.model_validate(self._strip(i)) for i in self._query_gsi("TOKENS")]

    def delete_token(self, token_hash: str) -> bool:
        try:
            self.table.delete_item(
                Key={"pk": f"TOKEN#{token_hash}", "sk": "TOKEN"}, ConditionExpression="attribute_exists(pk)"
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True
