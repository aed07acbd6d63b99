"""MONGO_URL as it is reaches the service's MongoDB client: its options (a replica set's
name, read preference, write concern...) are PyMongo's to follow. Claim writes stay
majority-acknowledged whatever the URL's `w`, and retryable writes are on unless the URL
turns them off.

No replica set can be started here (FerretDB has none, and no mongod is installed), so a
URL naming one is not tried against a server: these are the options on a standalone."""

from __future__ import annotations

from pymongo.write_concern import WriteConcern

from orchestrator.bootstrap import mongo_client
from services.claims import MongoClaims
from tests.support.settings import changed

OPTIONS = "appname=coupon-options-test&w=1&readPreference=primaryPreferred&maxIdleTimeMS=12345"


async def test_the_urls_options_reach_the_client_and_claims_stay_majority(settings):
    url = f"{settings.mongo_url}/?{OPTIONS}"
    async with mongo_client(changed(settings, {"mongo_url": url, "mongo_pool_size": 1})) as current:
        client = current.client
        assert client.options.pool_options.metadata["application"] == {
            "name": "coupon-options-test"
        }
        assert client.options.pool_options.max_idle_time_seconds == 12.345
        assert client.read_preference.mongos_mode == "primaryPreferred"
        assert client.write_concern == WriteConcern(w=1)
        assert client.options.retry_writes is True  # ours, the URL saying nothing of it
        # The claims adapter sets its own: a claim reported stands through a failover.
        claims = MongoClaims(current)._claims
        assert claims.write_concern == WriteConcern(w="majority")


async def test_retryable_writes_turned_off_by_the_url_stay_off(settings):
    url = f"{settings.mongo_url}/?retryWrites=false"
    async with mongo_client(changed(settings, {"mongo_url": url, "mongo_pool_size": 1})) as current:
        assert current.client.options.retry_writes is False
