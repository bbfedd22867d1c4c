"""The StackOverflow database's tables as SQL Server defines them (../shared/STACKOVERFLOW.md):
what a dump is loaded into (``dump``) and what the sample generator fills (``testing.sample``)."""
from .dialects.base import Column, Table

# (name, SQL Server type, nullable) in creation order; Id is always int IDENTITY primary key
SCHEMA = {
    "Badges": [("Name", "nvarchar(40)", False), ("UserId", "int", False), ("Date", "datetime", False)],
    "Comments": [("CreationDate", "datetime", False), ("PostId", "int", False), ("Score", "int", True),
                 ("Text", "nvarchar(700)", False), ("UserId", "int", True)],
    "LinkTypes": [("Type", "varchar(50)", False)],
    "PostLinks": [("CreationDate", "datetime", False), ("PostId", "int", False),
                  ("RelatedPostId", "int", False), ("LinkTypeId", "int", False)],
    "Posts": [("AcceptedAnswerId", "int", True), ("AnswerCount", "int", True),
              ("Body", "nvarchar(max)", False), ("ClosedDate", "datetime", True),
              ("CommentCount", "int", True), ("CommunityOwnedDate", "datetime", True),
              ("CreationDate", "datetime", False), ("FavoriteCount", "int", True),
              ("LastActivityDate", "datetime", False), ("LastEditDate", "datetime", True),
              ("LastEditorDisplayName", "nvarchar(40)", True), ("LastEditorUserId", "int", True),
              ("OwnerUserId", "int", True), ("ParentId", "int", True), ("PostTypeId", "int", False),
              ("Score", "int", False), ("Tags", "nvarchar(150)", True), ("Title", "nvarchar(250)", True),
              ("ViewCount", "int", False)],
    "PostTypes": [("Type", "nvarchar(50)", False)],
    "Users": [("AboutMe", "nvarchar(max)", True), ("Age", "int", True), ("CreationDate", "datetime", False),
              ("DisplayName", "nvarchar(40)", False), ("DownVotes", "int", False),
              ("EmailHash", "nvarchar(40)", True), ("LastAccessDate", "datetime", False),
              ("Location", "nvarchar(100)", True), ("Reputation", "int", False), ("UpVotes", "int", False),
              ("Views", "int", False), ("WebsiteUrl", "nvarchar(200)", True), ("AccountId", "int", True)],
    "Votes": [("PostId", "int", False), ("UserId", "int", True), ("BountyAmount", "int", True),
              ("VoteTypeId", "int", False), ("CreationDate", "datetime", False)],
    "VoteTypes": [("Name", "varchar(50)", False)],
    "PostHistory": [("PostHistoryTypeId", "int", False), ("PostId", "int", False),
                    ("RevisionGUID", "uniqueidentifier", False), ("CreationDate", "datetime", False),
                    ("UserId", "int", True), ("UserDisplayName", "nvarchar(40)", True),
                    ("Comment", "nvarchar(max)", True), ("Text", "nvarchar(max)", True)],
    "Tags": [("TagName", "nvarchar(150)", False), ("Count", "int", False), ("ExcerptPostId", "int", True),
             ("WikiPostId", "int", True)],
}

PK_NAMES = {"Users": "PK_Users_Id", "VoteTypes": "PK_VoteType__Id"}

ROWS_2010 = {"Badges": 1_102_019, "Comments": 3_875_183, "LinkTypes": 2, "PostLinks": 161_519,
             "Posts": 3_729_195, "PostTypes": 8, "Users": 299_398, "Votes": 10_143_364, "VoteTypes": 15,
             "PostHistory": 9_000_000}

LOOKUPS = {
    "LinkTypes": [(1, "Linked"), (3, "Duplicate")],
    "PostTypes": list(enumerate(["Question", "Answer", "Wiki", "TagWikiExerpt", "TagWiki",
                                 "ModeratorNomination", "WikiPlaceholder", "PrivilegeWiki"], start=1)),
    "VoteTypes": [(1, "AcceptedByOriginator"), (2, "UpMod"), (3, "DownMod"), (4, "Offensive"),
                  (5, "Favorite"), (6, "Close"), (7, "Reopen"), (8, "BountyStart"), (9, "BountyClose"),
                  (10, "Deletion"), (11, "Undeletion"), (12, "Spam"), (13, "InformModerator"),
                  (15, "ModeratorReview"), (16, "ApproveEditSuggestion")],
}

def table_def(name, schema="dbo"):
    """The sample table as a SQL Server catalog would describe it."""
    cols = [Column(name="Id", data_type="int", nullable=False, identity=True, source_type="int")]
    for cname, typ, nullable in SCHEMA[name]:
        base = typ.split("(")[0]
        length = None
        if "(" in typ:
            arg = typ.split("(")[1].rstrip(")")
            length = -1 if arg == "max" else int(arg)
        cols.append(Column(name=cname, data_type=base, nullable=nullable, length=length, source_type=typ))
    pk = PK_NAMES.get(name, f"PK_{name}__Id")
    return Table(schema=schema, name=name, columns=cols, primary_key=["Id"], pk_name=pk, dialect="mssql")


def table_names(post_history=False):
    """The nine StackOverflow2010 tables, and PostHistory when asked (Tags is for dumps only)."""
    return [t for t in SCHEMA if t != "Tags" and (post_history or t != "PostHistory")]
