"""Flash sales, double dips and duplicates with the gateway behind PgBouncer (conftest),
each checked against PostgreSQL and MongoDB directly."""

from tests.e2e.test_concurrency import (  # noqa: F401
    test_double_dip_gives_one_claim,
    test_double_dip_on_the_last_unit_is_already_claimed,
    test_duplicates_never_crowd_out_other_users,
    test_flash_sale_has_exactly_stock_winners,
    test_many_users_many_coupons_at_once,
)
