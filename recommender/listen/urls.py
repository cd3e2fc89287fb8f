"""Routes of the listening room (mounted at the site root): the page and the audio of a track, by id only."""

from django.urls import path

from recommender.listen import views

urlpatterns = [
    path("listen/", views.listening_room_page, name="listening-room"),
    path("listen/audio/<int:track_id>", views.track_audio, name="listening-audio"),
]
