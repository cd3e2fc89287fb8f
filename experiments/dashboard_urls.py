"""Staff dashboard routes (mounted at the site root)."""

urlpatterns: list = []
