"""The REST API (Django REST framework): thin views over the services and selectors,
small input serializers (``inputs``) and output serializers.

May import every domain package; never ``retention.web``.
"""
