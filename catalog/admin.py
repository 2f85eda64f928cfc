from django.contrib import admin, messages

from catalog import services
from catalog.models import Customer, Event, Product, ProductEmbedding, StorefrontKey


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "title", "brand", "category_path", "price", "in_stock", "updated_at"]
    list_filter = ["in_stock", "brand", "created_at"]
    search_fields = ["sku", "title", "brand", "category_path"]
    readonly_fields = ["created_at", "updated_at"]
    list_per_page = 50
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.schedule_product_embeddings(product_ids=[obj.pk])


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "created_at"]
    search_fields = ["external_id"]
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "type", "customer", "product", "value", "session"]
    list_filter = ["type", "timestamp"]
    search_fields = ["client_event_id", "customer__external_id", "product__sku", "session"]
    raw_id_fields = ["customer", "product"]
    list_select_related = ["customer", "product"]
    date_hierarchy = "timestamp"
    show_full_result_count = False


@admin.register(ProductEmbedding)
class ProductEmbeddingAdmin(admin.ModelAdmin):
    list_display = ["product", "version", "created_at"]
    list_filter = ["version"]
    raw_id_fields = ["product"]
    exclude = ["embedding"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False


@admin.register(StorefrontKey)
class StorefrontKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "scope", "prefix", "active", "created_at", "last_used_at"]
    list_filter = ["scope", "active"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.create_storefront_key(name=obj.name, scope=obj.scope)
        obj.pk = key.pk
        messages.warning(request, f"New API key (shown only once): {raw}")
