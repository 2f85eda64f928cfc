from django.contrib import admin

from chatbot.models import Intent, IntentExample


@admin.register(Intent)
class IntentAdmin(admin.ModelAdmin):
    list_display = ["name", "dataset", "domain", "hand_off", "is_out_of_scope"]
    list_filter = ["dataset", "hand_off", "is_out_of_scope", "domain"]
    search_fields = ["name", "answer"]


@admin.register(IntentExample)
class IntentExampleAdmin(admin.ModelAdmin):
    list_display = ["text", "intent", "split", "source", "created_at"]
    list_filter = ["split", "intent__dataset", "source"]
    search_fields = ["text", "intent__name"]
    raw_id_fields = ["intent"]
    list_select_related = ["intent"]
    show_full_result_count = False
