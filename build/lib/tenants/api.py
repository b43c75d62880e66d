"""Account API: the login view, dj-rest-auth's, throttled per client."""

from dj_rest_auth.views import LoginView
from rest_framework.throttling import ScopedRateThrottle


class ThrottledLoginView(LoginView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
