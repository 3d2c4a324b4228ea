# SGLang's ModelRegistry imports every module of this package and registers its EntryClass:
# keep only model modules here.
