from __future__ import annotations

from django.conf import settings
from django.middleware.locale import LocaleMiddleware
from django.utils import translation


class ChosenLanguageMiddleware(LocaleMiddleware):
    """The language a member chose with the switch (a cookie), else LANGUAGE_CODE (zh-Hans).

    In the browser, Accept-Language is deliberately ignored: a Chinese team on English-locale
    machines should still get the Chinese product until someone picks English. API clients
    ask for a language with Accept-Language, as HTTP intends.
    """

    def process_request(self, request) -> None:
        if request.path_info.startswith("/api/"):
            return super().process_request(request)
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        supported = {code for code, _name in settings.LANGUAGES}
        translation.activate(chosen if chosen in supported else settings.LANGUAGE_CODE)
        request.LANGUAGE_CODE = translation.get_language()
