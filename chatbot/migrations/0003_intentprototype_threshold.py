from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0002_conversations_review_prototypes"),
    ]

    operations = [
        migrations.AddField(
            model_name="intentprototype",
            name="threshold",
            field=models.FloatField(
                blank=True,
                help_text="Cosine under which a message is unlike the examples (leave-one-out); empty with one example.",
                null=True,
            ),
        ),
    ]
