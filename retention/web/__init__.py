"""The browser UI: thin views, forms and presenters over the services and selectors.

May import every domain package; the API never imports this package.
"""
