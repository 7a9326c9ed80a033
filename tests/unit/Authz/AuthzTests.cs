using ExportServer.Nbd.Authz;
using Xunit;

namespace ExportServer.UnitTests.Authz;

public sealed class AuthzTests
{
    [Theory]
    [InlineData("CN=client1.*", "CN=client1.example.com,O=Example Org,C=GB", true)]
    [InlineData("CN=client1.*", "CN=client10,O=x", false)]
    [InlineData("*,O=Example Org,*", "CN=a,O=Example Org,C=GB", true)]
    [InlineData("CN=?", "CN=a", true)]
    [InlineData("CN=?", "CN=ab", false)]
    [InlineData("CN=[a-c]x", "CN=bx", true)]
    [InlineData("CN=[!a-c]x", "CN=bx", false)]
    [InlineData("CN=\\*", "CN=*", true)]
    [InlineData("CN=\\*", "CN=a", false)]
    [InlineData("CN=[ab", "CN=[ab", true)]
    [InlineData("**a*b", "xxaxxb", true)]
    [InlineData("", "", true)]
    public void GlobsMatchAsFnmatch(string pattern, string text, bool expected) => Assert.Equal(expected, GlobMatch.IsMatch(pattern, text));

    [Fact]
    public void FirstMatchingRuleDecidesAndTheDefaultOtherwise()
    {
        var list = new AuthzList(
            [new AuthzRule("CN=bad.example.com", Allow: false, Glob: false), new AuthzRule("CN=*.example.com", Allow: true, Glob: true)],
            allowByDefault: false);
        Assert.False(list.IsAllowed("CN=bad.example.com"));
        Assert.True(list.IsAllowed("CN=good.example.com"));
        Assert.False(list.IsAllowed("CN=good.example.net"));
        Assert.False(list.IsAllowed("CN=*.example.com".Replace("*", "x") + " "));
        Assert.True(new AuthzList([], allowByDefault: true).IsAllowed("anyone"));
        Assert.True(new AuthzSimple("CN=a").IsAllowed("CN=a"));
        Assert.False(new AuthzSimple("CN=a").IsAllowed("CN=A"));
    }
}
