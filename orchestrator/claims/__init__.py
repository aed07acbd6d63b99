"""The coupon service the views call, and what keeps a flash sale cheap: the sold-out
memo and admission."""
