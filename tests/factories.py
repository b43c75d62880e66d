"""factory_boy factories for the shared (public-schema) models."""

import factory

from core.models import User

PASSWORD = "s3cret-Passw0rd!"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.django.Password(PASSWORD)
