"""Prior-knowledge gene embeddings: GRN, promoter, gene family, co-expression.

Paper, "Knowledge embedding and incorporation": each knowledge type becomes
one vector per gene, aligned to the token dictionary, and enters the model
beside the gene ID and its expression value.
"""
